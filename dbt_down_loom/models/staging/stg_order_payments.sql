with

source as (

    select * from {{ ref('dbt_up', 'public_order_payments') }}

),

renamed as (

    select
        payment_id,
        order_id,
        payment_method,
        amount as payment_amount,
        is_refund

    from source

),

final as (

    select * from renamed

)

select * from final
