with

source as (

    select * from {{ ref('dbt_up', 'public_customers') }}

),

renamed as (

    select
        customer_id,
        first_name,
        last_name,
        email,
        number_of_orders,
        lifetime_value

    from source

),

final as (

    select * from renamed

)

select * from final
