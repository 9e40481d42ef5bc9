with

source as (

    select * from {{ source('dbt_up', 'public_customers_v1') }}

),

renamed as (

    -- pinned to version 1 of public_customers: still reads customer_name
    select
        customer_id,
        customer_name,
        email

    from source

),

final as (

    select * from renamed

)

select * from final
